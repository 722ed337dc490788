"""Record linkage: which master person each record is about (Fellegi-Sunter, batch and online).

features (prepare both sides) -> blocking (candidate pairs) -> comparisons (levels) -> model (m, u,
prior, weights) -> batch (files and frames) / online (one record against the master store, through reads) ->
clusters (records of one person within a file); stored (the model a store links with); keys (master's
blocking keys and features, kept current as people change; loadkeys: a bulk load's).
"""

from govdb.link.batch import LinkOutput, link_frames, link_prepared
from govdb.link.clusters import DedupeOutput, dedupe_frame
from govdb.link.keys import ensure_link_keys, key_unrecorded_store, refresh_link_keys
from govdb.link.model import LinkModel
from govdb.link.online import LinkResult, link_against_master, link_one
from govdb.link.reads import read_people
from govdb.link.stored import default_model, store_model, stored_model, train_model

__all__ = [
    "DedupeOutput",
    "LinkModel",
    "LinkOutput",
    "LinkResult",
    "dedupe_frame",
    "default_model",
    "ensure_link_keys",
    "key_unrecorded_store",
    "link_against_master",
    "link_frames",
    "link_one",
    "link_prepared",
    "read_people",
    "refresh_link_keys",
    "store_model",
    "stored_model",
    "train_model",
]
