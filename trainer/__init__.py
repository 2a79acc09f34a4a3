"""talkdit training code: model, objectives, optimisers, data module and Lightning module."""
