"""What happens at each validation besides the loss: the metrics' reduction over the
ranks, the model's own replies (answered on every rank, scored, logged as media), and the
synthesis of a reply's true codes."""
