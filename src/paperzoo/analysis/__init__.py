"""Analysis tools that are a paper's contribution rather than a model: transferability scores (``nleep``)."""
