"""A blinded reader study (mean opinion score): build it, serve it to raters, report it.

``medsr mos create`` -> :mod:`medsr.mos.build` (the folder: :mod:`medsr.mos.study`); ``medsr mos serve`` -> :mod:`medsr.mos.app` over
:mod:`medsr.mos.db`; ``medsr mos report`` -> :mod:`medsr.mos.analysis` and :mod:`medsr.mos.report`.
"""
