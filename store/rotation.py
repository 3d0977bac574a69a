"""Re-sealing every stored personal value under the keyring's current key (`volbot pii
rotate`), online and resumable.

The sealed columns are every `SealedText` column of the models (the phones) plus the ID
number's ciphertext; beside each `<x>_enc` lies its lookup hash `<x>_hash`, rewritten in the
same statement so a row's hash is always under the version of its ciphertext.

Batches of rows in primary-key order, each its own short transaction: a crash loses at
most the batch under way, and a rerun skips what is already under the current key (the
stored text names its version). Each update is conditional on the ciphertext it read, so a
value the app rewrote meanwhile (already under the current key) is left alone. The app
keeps reading and writing throughout: it reads every version its keyring holds and looks
hashes up under all of them (`Keyring.hashes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import bindparam, column, func, select, table

from store.db import Database
from store.models import Base
from store.sealing import ID_NUMBER, PHONE, Keyring, SealedText, phone_digits, token_version

BATCH = 500


@dataclass(frozen=True)
class SealedColumn:
    table: str
    enc: str  # the ciphertext column
    hash: str | None  # its lookup hash column
    purpose: str

    def hash_of(self, keyring: Keyring, plain: str) -> str:
        # What each purpose's hash is taken from, as when it was first written: the ID
        # number is sealed already normalised; a phone by its digits.
        return keyring.hash(phone_digits(plain) if self.purpose == PHONE else plain, self.purpose)


def sealed_columns() -> list[SealedColumn]:
    found = [SealedColumn("volunteers", "id_number_enc", "id_number_hash", ID_NUMBER)]
    for t in Base.metadata.sorted_tables:
        for c in t.columns:
            if isinstance(c.type, SealedText):
                hash_name = c.name.removesuffix("_enc") + "_hash"
                found.append(SealedColumn(t.name, c.name, hash_name if hash_name in t.c else None, c.type.purpose))
    return found


def rotate(db: Database, keyring: Keyring, *, batch: int = BATCH,
           on_batch: Callable[[SealedColumn, int], None] | None = None) -> dict[str, int]:
    """Re-seal every value not under `keyring.current`; returns the rows rewritten per
    "table.column". `on_batch(column, rows)` is called after each committed batch."""
    done: dict[str, int] = {}
    prefix = keyring.current + ":"
    for sc in sealed_columns():
        t = table(sc.table, column("id"), column(sc.enc), *([column(sc.hash)] if sc.hash else []))
        enc = t.c[sc.enc]
        values = {sc.enc: bindparam("new_enc")} | ({sc.hash: bindparam("new_hash")} if sc.hash else {})
        update = t.update().where(t.c.id == bindparam("row_id"), enc == bindparam("old_enc")).values(values)
        key = f"{sc.table}.{sc.enc}"
        done[key] = 0
        after = 0
        while True:
            with db.engine.begin() as conn:
                rows = conn.execute(select(t.c.id, enc).where(t.c.id > after, enc.is_not(None),
                                                              ~enc.startswith(prefix, autoescape=True))
                                    .order_by(t.c.id).limit(batch)).all()
                if not rows:
                    break
                params = []
                for row_id, token in rows:
                    plain = keyring.decrypt(token, sc.purpose)
                    params.append({"row_id": row_id, "old_enc": token, "new_enc": keyring.encrypt(plain, sc.purpose),
                                   "new_hash": sc.hash_of(keyring, plain)})
                conn.execute(update, params)
            after = rows[-1].id
            done[key] += len(rows)
            if on_batch is not None:
                on_batch(sc, len(rows))
    return done


def versions_in_use(db: Database) -> dict[str, dict[str, int]]:
    """Rows per key version, per "table.column": when the old version's counts are all
    zero, its key may be retired."""
    out: dict[str, dict[str, int]] = {}
    with db.engine.connect() as conn:
        for sc in sealed_columns():
            t = table(sc.table, column(sc.enc))
            enc = t.c[sc.enc]
            version = func.substr(enc, 1, func.instr(enc, ":") - 1) if db.is_sqlite else \
                func.split_part(enc, ":", 1)
            counts = {}
            for v, n in conn.execute(select(version, func.count()).where(enc.is_not(None)).group_by(version)):
                counts[token_version(f"{v}:x") or str(v)] = n
            out[f"{sc.table}.{sc.enc}"] = counts
    return out
