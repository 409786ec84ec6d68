"""The dashboard's blueprints, one module per feature."""
