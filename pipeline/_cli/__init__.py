"""The command line (private): parsing into settings, progress, errors into exit codes."""
