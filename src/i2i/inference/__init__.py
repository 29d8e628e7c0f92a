"""Files in, files out: a trained or published model on a user's images (any size), export and the
web demo."""
