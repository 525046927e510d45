"""The program's Pulumi components: every module here declares at least one ComponentResource (typed `Args`,
`parent=self`, `register_outputs`), and nothing else lives here; pure helpers are in `server/`, `config/` and
`catalog/` below (see CONTRIBUTING.md, "Layout"; tests/fast/test_layers.py holds both rules)."""
