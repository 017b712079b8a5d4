"""Evaluation scripts behind `tingyin eval ...`: they print figures; tests never time anything."""
