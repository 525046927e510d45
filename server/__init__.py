"""What runs on a server, as pure functions (no Pulumi): the host plan, the server's layout, the rendering of
`cloud-init/`, the env file, the release. Imports `config` and `catalog` below it, never `components` or
`profiles`. Empty on purpose: djangoship/ imports `server.layout` with the standard library alone."""
