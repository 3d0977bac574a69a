"""Pushes: everything the account sends on its own initiative (template messages), the one
WeChat API client, the job queue worker and the scheduler."""
