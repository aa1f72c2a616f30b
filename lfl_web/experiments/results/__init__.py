"""What a search found, as the pages show it: the dashboard's panels (Pareto front, workers, loss
shapes), downloads of learned losses, the leaderboard's filters, and facts about a task's data."""
