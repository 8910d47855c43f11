"""Generated fault schedules: the model, the space, derived expectations, search, report."""
