"""Actions that take or break a journal's lock: repair, trials, migrate (above locks and guard)."""
