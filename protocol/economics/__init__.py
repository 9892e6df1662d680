"""Pure economic formulas: Yuma Consensus, fixed point, emission, fees, prices, hyperparameters, weights."""
