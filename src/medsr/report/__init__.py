"""Report building blocks: Markdown tables in the paper's layouts and comparison figures."""
