"""Print the NANP area codes of the US and Canada with their state or province, as SQL rows
for pgflow.area_codes, from the `phonenumbers` package's geocoding data (the version pinned
in requirements.lock). A migration shipped the result; run this to write the next one when
area codes are added:

    .venv/bin/python scripts/area_codes.py > rows.sql

An area code whose description names no single state or province (a non-geographic code
such as 800 or 500, or one shared across regions) is left out: a lead with it gets the
strictest rules (pgflow.state_rules 'ZZ')."""

from __future__ import annotations

import re
import sys

import phonenumbers
from phonenumbers import geocoder

US = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington State": "WA", "Washington": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Washington D.C.": "DC", "Washington, D.C.": "DC",
    "District of Columbia": "DC", "Puerto Rico": "PR", "Guam": "GU",
    "US Virgin Islands": "VI", "U.S. Virgin Islands": "VI", "American Samoa": "AS",
    "Northern Mariana Islands": "MP",
}  # fmt: skip
CA = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Nova Scotia": "NS", "Ontario": "ON",
    "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
    "Nova Scotia/Prince Edward Island": "NS", "British Colombia": "BC",
}  # fmt: skip
CODES = set(US.values()) | set(CA.values())
CITY = re.compile(r",\s*([A-Z]{2})$")


def region(description: str, country: str) -> str | None:
    names = US if country == "US" else CA
    if description in names:
        return names[description]
    found = CITY.search(description)
    if found and found.group(1) in CODES:
        return found.group(1)
    return None


def rows() -> list[tuple[str, str, str]]:
    out = []
    for npa in range(200, 1000):
        regions: dict[str, str] = {}
        for exchange in ("234", "456", "789", "321", "654"):
            number = phonenumbers.parse(f"+1{npa}{exchange}1234")
            if not phonenumbers.is_valid_number(number):
                continue
            country = phonenumbers.region_code_for_number(number)
            if country not in ("US", "CA"):
                continue
            code = region(geocoder.description_for_number(number, "en"), country)
            if code is not None:
                regions[code] = country
        if len(regions) == 1:
            [(code, country)] = regions.items()
            out.append((str(npa), code, country))
    return out


def main() -> None:
    found = rows()
    assert all(re.fullmatch(r"[2-9]\d\d", n) and c in CODES for n, c, _ in found)
    values = ",\n".join(f"  ('{npa}', '{code}', '{country}')" for npa, code, country in found)
    # the values are 3 digits and 2 capital letters (checked above): a migration's text
    statement = "insert into pgflow.area_codes (npa, region, country) values\n"
    sys.stdout.write(statement + values + ";\n")


if __name__ == "__main__":
    main()
