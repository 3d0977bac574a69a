"""The domain's rules: what may happen to orders, offers, volunteers, hours, the time bank,
activities, the Volunteer Bus, places and teams, and who may see what (access, personal data).

Used alike by chat (`handlers/`), the CLI and the console, so a rule holds wherever it is
triggered from. Each module reads and writes through `store/` in the caller's transaction (a
notice is a row in the outbox, `store.outbox`, written in the same transaction); none knows
Flask, WeChat or the conversation.
"""
