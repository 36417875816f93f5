"""Importers for public function-calling datasets, each reading its upstream format."""
