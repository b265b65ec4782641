"""kray's command line: a thin Typer layer that parses, calls the library, and renders with rich."""
