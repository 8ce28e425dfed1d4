"""The launch page: a small web app over the same client API as the CLI."""
