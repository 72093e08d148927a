"""The report's sections, in the order the page shows them: one module per section."""
