"""Store inventory and its replenishment policy.

Stock is tracked per carried (store, sku) "key". Store sales decrement it; deliveries add
to it. Replenishment follows an (s, S) policy on the inventory position (on hand + on
order): when it drops to the reorder point s, a shipment brings it back up to S.

The reorder point is sized, as a retailer would, to the demand expected during the
replenishment lead time (pick + load + route lead time) with a little safety stock. Demand
per key depends on how fast the simulation runs (`sim_seconds_per_event`), so the policy
is computed from it. Shipments late beyond the safety stock therefore cause stock-outs.

S - s is at least the sku's case pack and grows with lead-time demand so that at most
`MAX_SHIPMENTS_IN_FLIGHT` shipments per key are on the road: that bounds memory when the
simulation runs very fast, at the price of fewer, larger shipments.
"""

from __future__ import annotations

import numpy as np

from retailstream.world.reference import World

MAX_SHIPMENTS_IN_FLIGHT = 8
SAFETY_FACTOR = 1.3
SAFETY_SIGMAS = 1.5


class Inventory:
    """On-hand and on-order units per carried (store, sku), plus the (s, S) policy.

    Keys are positions in `World.index.assortment_sku`; `key_of[store, sku]` maps to them
    (-1 where the store does not carry the sku). Scalar state lives in Python lists because
    the sales loop reads and writes single keys, where lists are fastest.
    """

    def __init__(self, world: World) -> None:
        index = world.index
        n_stores, n_products = len(world.stores), len(world.products)
        counts = np.diff(index.assortment_ptr)
        self.key_store = np.repeat(np.arange(n_stores), counts)
        self.key_sku = index.assortment_sku
        self.key_of = np.full((n_stores, n_products), -1, dtype=np.int32)
        self.key_of[self.key_store, self.key_sku] = np.arange(len(self.key_sku))
        self.on_hand: list[int] = index.assortment_on_hand.tolist()
        self.on_order: list[int] = [0] * len(self.key_sku)
        self.reorder_point: list[int] = [0] * len(self.key_sku)
        self.order_up_to: list[int] = [0] * len(self.key_sku)
        self.case_pack = index.product_case_pack[self.key_sku]

    def set_policy(self, demand_per_second: np.ndarray, lead_seconds: np.ndarray) -> None:
        """Recompute (s, S) from expected unit demand per key per second and the expected
        replenishment lead time per key in seconds (both aligned with the keys)."""
        lead_demand = demand_per_second * lead_seconds
        s = np.ceil(SAFETY_FACTOR * lead_demand + SAFETY_SIGMAS * np.sqrt(lead_demand))
        s = np.maximum(s, 1).astype(np.int64)
        lot = np.maximum(self.case_pack, np.ceil(lead_demand / MAX_SHIPMENTS_IN_FLIGHT))
        self.reorder_point = s.tolist()
        self.order_up_to = (s + lot.astype(np.int64)).tolist()

    def keys_needing_replenishment(self) -> np.ndarray:
        """Keys whose inventory position is at or below the reorder point (vectorised)."""
        position = np.array(self.on_hand) + np.array(self.on_order)
        return np.flatnonzero(position <= np.array(self.reorder_point))

    def shortfall(self, key: int) -> int:
        """Units to order for key now (0 when the position is above the reorder point)."""
        position = self.on_hand[key] + self.on_order[key]
        if position > self.reorder_point[key]:
            return 0
        return self.order_up_to[key] - position


class EmittedStock:
    """On-hand units per key as the records handed out so far tell it.

    The generator applies a sale or a delivery when it simulates it, which may
    be a step before the record saying so is handed out (`next_batch` keeps
    the rest of a step pending). This ledger holds each stock move with the
    sequence number of its record and applies it when that record is
    released, so its totals are exactly what a consumer of every released
    record can know: the ground truth of the inventory view.
    """

    def __init__(self, initial_on_hand: np.ndarray) -> None:
        self.on_hand = np.asarray(initial_on_hand, dtype=np.int64).copy()
        self._seq = np.zeros(0, dtype=np.int64)
        self._key = np.zeros(0, dtype=np.int64)
        self._delta = np.zeros(0, dtype=np.int64)

    def add(self, seqs: np.ndarray, keys: np.ndarray, deltas: np.ndarray) -> None:
        """Moves of records not released yet (`seqs`: their sequence numbers)."""
        self._seq = np.concatenate([self._seq, np.asarray(seqs, dtype=np.int64)])
        self._key = np.concatenate([self._key, np.asarray(keys, dtype=np.int64)])
        self._delta = np.concatenate([self._delta, np.asarray(deltas, dtype=np.int64)])

    def release(self, cutoff: int) -> None:
        """Apply the moves of every record with a sequence number below `cutoff`."""
        due = self._seq < cutoff
        if due.any():
            np.add.at(self.on_hand, self._key[due], self._delta[due])
            keep = ~due
            self._seq, self._key, self._delta = self._seq[keep], self._key[keep], self._delta[keep]
