"""Judging: what is computed afterwards from the records alone (roofline floors, validity, derived figures,
the regression gate), so a committed result file can be judged again without the machine."""
