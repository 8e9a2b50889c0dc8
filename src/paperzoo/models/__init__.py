"""Model families, grouped by task. Every module here is imported by the registry on first use, so a new
family only adds files. A paper's code is found from its slug: ``paperzoo show SLUG`` lists its modules."""
