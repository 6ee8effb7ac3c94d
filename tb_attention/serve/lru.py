"""A small thread-safe LRU cache: the plugin's memory stays bounded however long TensorBoard runs."""

import collections
import threading


class Lru:
    def __init__(self, size):
        self._size = size
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._items)

    def get(self, key, make):
        """The cached value for `key`, else `make()` (called without the lock held; exceptions are not cached)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
