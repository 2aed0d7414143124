"""Spreadsheet cells as people type them: amounts with either thousands separator, dates in
either order, status and source words in either language; anything else is refused, never
guessed."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityops.programme import imports


@given(st.integers(min_value=0, max_value=10**15))
def test_amounts_read_back_whatever_the_thousands_separator(amount: int) -> None:
    english = f"{amount:,}"
    vietnamese = english.replace(",", ".")
    for text in (str(amount), english, vietnamese, f"{vietnamese} đ", f"{amount}.0"):
        assert imports._int(text, low=0, high=10**15) == amount


@pytest.mark.parametrize("text", ["1,5 tỷ", "12.5", "1.2345", "1,00,000", "-5", "", "abc", "1e9"])
def test_what_is_not_a_whole_amount_is_refused(text: str) -> None:
    with pytest.raises(imports._CellError):
        imports._int(text, low=0, high=10**15)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_dates_read_back_in_iso_and_vietnamese_order(day: date) -> None:
    assert imports._date(day.isoformat()) == day
    assert imports._date(day.strftime("%d/%m/%Y")) == day
    assert imports._date(f"{day.day}/{day.month}/{day.year}") == day


@pytest.mark.parametrize("text", ["31/02/2026", "2026-13-01", "12/31/2026", "1999-12-31", "mai"])
def test_impossible_or_ambiguous_dates_are_refused(text: str) -> None:
    with pytest.raises(imports._CellError):
        imports._date(text)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Đang triển khai", "in_progress"),
        ("đang thực hiện", "in_progress"),
        ("HOÀN THÀNH", "done"),
        ("Chậm tiến độ", "delayed"),
        ("Chưa triển khai", "planned"),
        ("cancelled", "cancelled"),
    ],
)
def test_status_words_in_either_language(text: str, status: str) -> None:
    assert imports._word(text, imports.STATUS_WORDS, "x") == status


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("Vốn sự nghiệp", "recurrent"),
        ("chi thường xuyên", "recurrent"),
        ("Vốn đầu tư phát triển", "investment"),
        ("ĐTPT", "investment"),
    ],
)
def test_source_words_in_either_language(text: str, source: str) -> None:
    assert imports._word(text, imports.SOURCE_WORDS, "x") == source


def test_headers_and_sheet_names_match_without_diacritics_or_punctuation() -> None:
    assert imports.kind_of("Hạng mục") == "items"
    assert imports.kind_of("ngan_sach.csv") == "budget"
    assert imports.kind_of("Mốc tiến độ") == "milestones"
    assert imports.kind_of("Báo cáo") is None
    assert imports._key("Tiến độ (%)") == "tien_do"
