"""The console's pages, one module per area; importing them registers their routes."""
