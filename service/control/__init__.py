"""The control plane: what runs inside the API process to start, watch and stop study
drivers (locally or as Ray Jobs). Nothing here runs in a driver or on a Ray worker."""
