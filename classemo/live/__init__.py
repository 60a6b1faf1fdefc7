"""Live lessons: a camera or stream in, each person's state on the teacher's page every second (docs/live.md)."""
