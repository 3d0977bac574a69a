"""The demo district: deterministic demo data shaped like Kuiwen's (`demo.district`), its
map (`demo.geography`), generated names (`demo.names`) and the process supervisor that runs
the whole service on one machine (`demo.supervisor`, behind `volbot demo`).
"""
