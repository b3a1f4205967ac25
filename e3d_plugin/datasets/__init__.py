"""Generated datasets for testing and demonstrating the plugin."""
