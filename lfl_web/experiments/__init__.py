"""Experiments: the stored record of every search, the Celery tasks that run it, its live stream.

One subpackage per part of the product: `submit` (the new-experiment form, its checks and uploads),
`fanout` (a search over any number of workers), `live` (events saved, then sent to the browsers),
`results` (the dashboard's panels, downloads, the leaderboard's filters), `transfers` (a learned
loss meta-tested on another task). Every write goes through `services`, every read a page or the
API names through `selectors`, and every message to the broker through `broker.send`.
"""
