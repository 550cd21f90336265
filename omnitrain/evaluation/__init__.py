"""``omnitrain eval``: what a model says and how it sounds. Replies are scored for text
(exact match, teacher-forced loss) and, where spoken, for intelligibility (an ASR model's
word and character error rates) and voice (speaker similarity to a reference), by scorer
plugins registered by name (``scorers``)."""
