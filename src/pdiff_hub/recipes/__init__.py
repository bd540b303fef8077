"""Recipes: YAML files shipped with the package (loaded by name or path), read into typed sections."""
