# client/: the SDC and its NBD server.
