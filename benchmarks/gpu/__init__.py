"""The GPU check: one prepared command for a short GPU window (check.sh), its step profile and summary."""
