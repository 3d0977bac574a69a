"""One module per page (or group of pages) of /m; each registers its routes on `pages`."""
