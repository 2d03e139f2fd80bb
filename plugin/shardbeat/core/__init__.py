"""Pure logic: no sockets, no threads, no clock reads (time is always a parameter)."""
