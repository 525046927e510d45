"""The two shapes of the site, chosen by the `profile` setting: one server, or AWS's managed services."""
