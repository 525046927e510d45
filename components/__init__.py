"""Components of the Django-on-EC2 program; each module declares one thing (see README, "Layout")."""
