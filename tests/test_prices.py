"""Prices: the price file, catalog price fields, prices on matches and `GET /api/refs?sort=price`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cover_id.errors import CoverIdError
from cover_id.prices import PriceBook, total


def test_price_file_by_id_set_code_and_catalog_field(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"the-matrix": {"value": 12.5, "currency": "EUR"}, "LOCH-JP001": 3}))
    book = PriceBook.load(f)
    assert len(book) == 2
    assert book.lookup({"id": "the-matrix"}) == {"value": 12.5, "currency": "EUR", "source": "prices"}
    assert book.lookup({"id": "dm", "set_code": "loch-jp001"})["value"] == 3.0  # set codes match in any case
    assert book.lookup({"id": "x", "price": 7, "currency": "USD"}) == {
        "value": 7.0,
        "currency": "USD",
        "source": "catalog",
    }
    assert book.lookup({"id": "the-matrix", "price": 1})["source"] == "prices"  # the file wins
    assert book.lookup({"id": "nothing"}) is None and book.lookup({"id": "x", "price": "cheap"}) is None
    r = {"decision": "accept", "match": {"id": "the-matrix"}, "alternatives": [{"id": "y"}]}
    book.annotate(r)
    assert r["match"]["price"]["value"] == 12.5 and "price" not in r["alternatives"][0]
    t = total([({"value": 2.5, "currency": "EUR"}, 2), ({"value": 1, "currency": None}, 1), (None, 3)])
    assert t == {"by_currency": {"EUR": 5.0, "": 1.0}, "priced": 3, "unpriced": 3}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"a": "cheap"}', "price of 'a' must be a number"),
        ('{"a": {"value": 1, "currency": 3}}', "currency of 'a' must be text"),
    ],
)
def test_bad_price_files_are_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "prices.json"
    f.write_text(content)
    with pytest.raises(CoverIdError, match=message):
        PriceBook.load(f)
    with pytest.raises(CoverIdError, match="price file not found"):
        PriceBook.load(tmp_path / "missing.json")


def test_prices_on_a_real_server(tmp_path: Path) -> None:
    from tests.test_serve import build_world, jpeg, serve

    world = build_world(tmp_path)
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"cover-002": {"value": 40, "currency": "EUR"}, "cover-005": {"value": 90, "currency": "EUR"}})
    )
    s = serve(world["index"], {"prices": str(prices)})
    try:
        r = s.client.post("/api/identify", files=jpeg(world["photo"])).json()
        assert r["match"]["id"] == "cover-002" and r["match"]["price"] == {
            "value": 40.0,
            "currency": "EUR",
            "source": "prices",
        }
        assert not any("price" in a for a in r["alternatives"] if a["id"] not in ("cover-002", "cover-005"))
        page = s.client.get("/api/refs", params={"sort": "price", "limit": 3}).json()
        assert [i["id"] for i in page["items"]] == ["cover-005", "cover-002", "cover-000"]
        assert page["items"][2]["price"] is None and page["total"] == 8 and page["sort"] == "price"
        assert s.client.get("/api/refs/cover-005").json()["price"]["value"] == 90
        ids = [i["id"] for i in s.client.get("/api/refs", params={"sort": "price", "q": "number"}).json()["items"]]
        assert ids[:2] == ["cover-005", "cover-002"] and len(ids) == 8
        bad = s.client.get("/api/refs", params={"sort": "year"})
        assert bad.status_code == 422 and "sort" in bad.json()["detail"]
    finally:
        s.client.close()
        s.server.stop()
