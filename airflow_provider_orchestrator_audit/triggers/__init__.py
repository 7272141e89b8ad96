"""Triggers that wait, in Airflow's triggerer, for something to happen in an organization's audit log."""
