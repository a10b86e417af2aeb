"""What a user does with a study once it ran, and without one: train one configuration,
promote the best to a registered model (``promote``, ``registry``), predict with it, and read
the study back (``summary``, ``report``).
"""
