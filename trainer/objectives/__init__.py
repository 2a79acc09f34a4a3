"""Training objectives: timestep sampling, condition dropout, masked flow matching, KNN noise, contrastive FM."""
