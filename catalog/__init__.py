"""What the program knows of AWS before any API call: its offerings and their prices, the scaled profile's cost,
the instance roles' trust policy and the tags every resource carries. The lowest layer: imports nothing from the
layers above it (see CONTRIBUTING.md, "Layout"; tests/fast/test_layers.py holds the order)."""
