"""Test configuration: the fixtures themselves ship in feedfabric.testing.plugin."""
