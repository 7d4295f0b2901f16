"""The fraud-detection example: 15 YAML nodes over eight generated data sets.

`write_project` lays out a project with eight sources, four transforms, two feature
groups and one exposure, and fills `data/` with synthetic card transactions. The data
come from DuckDB SQL whose randomness is an integer hash of each row number, so the
same scale always gives byte-identical files, and `scale=100` (a million
transactions) takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

BASE_ROWS: dict[str, int] = {
    "transactions": 10_000,
    "user_profiles": 5_000,
    "device_fingerprints": 8_000,
    "ip_geolocation": 3_000,
    "merchant_data": 1_500,
    "card_data": 6_000,
    "fraud_labels": 2_000,
    "realtime_alerts": 1_000,
}

DATA_FILES: dict[str, str] = {
    "transactions": "transactions.csv",
    "user_profiles": "user_profiles.csv",
    "device_fingerprints": "device_fingerprints.parquet",
    "ip_geolocation": "ip_geolocation.csv",
    "merchant_data": "merchant_data.csv",
    "card_data": "card_data.csv",
    "fraud_labels": "fraud_labels.csv",
    "realtime_alerts": "realtime_alerts.parquet",
}

NODE_FILES: dict[str, str] = {
    "sources/01_source_transactions.yml": """\
kind: source
name: transactions
description: >
  Card payments over 90 days (January to March 2024), one row per authorisation,
  with the outcome decided by the fraud team afterwards.
owner: fraud-team
tags: [fraud, raw]
source: csv
table: data/transactions.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: transaction_id, data_type: bigint}
  - {name: customer_id, data_type: integer}
  - {name: card_id, data_type: integer}
  - {name: merchant_id, data_type: integer}
  - {name: device_id, data_type: integer}
  - {name: ip_address, data_type: string}
  - {name: amount, data_type: double}
  - {name: channel, data_type: string}
  - {name: event_time, data_type: timestamp}
  - {name: is_fraud, data_type: boolean}
""",
    "sources/02_source_user_profiles.yml": """\
kind: source
name: user_profiles
description: Customer accounts with home country, age, tier and identity check.
owner: fraud-team
tags: [fraud, raw, customers]
source: csv
table: data/user_profiles.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: customer_id, data_type: integer}
  - {name: signup_date, data_type: date}
  - {name: country, data_type: string}
  - {name: age, data_type: integer}
  - {name: account_tier, data_type: string}
  - {name: kyc_verified, data_type: boolean}
""",
    "sources/03_source_device_fingerprints.yml": """\
kind: source
name: device_fingerprints
description: >
  Devices seen by the payment SDK, the customer each is registered to, and the
  fingerprinting vendor's risk score. Delivered as Parquet.
owner: fraud-team
tags: [fraud, raw, devices]
source: parquet
table: data/device_fingerprints.parquet
schema:
  - {name: device_id, data_type: integer}
  - {name: customer_id, data_type: integer}
  - {name: device_type, data_type: string}
  - {name: os, data_type: string}
  - {name: is_emulator, data_type: boolean}
  - {name: first_seen_at, data_type: timestamp}
  - {name: risk_score, data_type: double}
""",
    "sources/04_source_ip_geolocation.yml": """\
kind: source
name: ip_geolocation
description: IP addresses with country, network and a reputation score (0 to 100).
owner: fraud-team
tags: [fraud, raw, network]
source: csv
table: data/ip_geolocation.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: ip_address, data_type: string}
  - {name: country, data_type: string}
  - {name: asn, data_type: integer}
  - {name: is_proxy, data_type: boolean}
  - {name: is_hosting, data_type: boolean}
  - {name: reputation_score, data_type: double}
""",
    "sources/05_source_merchant_data.yml": """\
kind: source
name: merchant_data
description: Merchants accepting the cards, with category code and country.
owner: fraud-team
tags: [fraud, raw, merchants]
source: csv
table: data/merchant_data.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: merchant_id, data_type: integer}
  - {name: merchant_name, data_type: string}
  - {name: category, data_type: string}
  - {name: mcc, data_type: integer}
  - {name: country, data_type: string}
  - {name: onboarded_on, data_type: date}
""",
    "sources/06_source_card_data.yml": """\
kind: source
name: card_data
description: Issued cards; every customer holds one, some hold two.
owner: fraud-team
tags: [fraud, raw, cards]
source: csv
table: data/card_data.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: card_id, data_type: integer}
  - {name: customer_id, data_type: integer}
  - {name: card_type, data_type: string}
  - {name: network, data_type: string}
  - {name: issued_on, data_type: date}
  - {name: expires_on, data_type: date}
  - {name: credit_limit, data_type: double}
""",
    "sources/07_source_fraud_labels.yml": """\
kind: source
name: fraud_labels
description: >
  Closed investigation cases, one per reviewed transaction: confirmed fraud or
  cleared, how the case was opened and the money lost.
owner: fraud-team
tags: [fraud, raw, labels]
source: csv
table: data/fraud_labels.csv
params:
  delimiter: ","
  header: true
schema:
  - {name: case_id, data_type: bigint}
  - {name: transaction_id, data_type: bigint}
  - {name: merchant_id, data_type: integer}
  - {name: is_fraud, data_type: boolean}
  - {name: label_source, data_type: string}
  - {name: reported_at, data_type: timestamp}
  - {name: loss_amount, data_type: double}
""",
    "sources/08_source_realtime_alerts.yml": """\
kind: source
name: realtime_alerts
description: >
  Alerts raised by the real-time scoring rules seconds after a payment. Landed
  from the event stream as Parquet.
owner: fraud-team
tags: [fraud, raw, alerts]
source: parquet
table: data/realtime_alerts.parquet
schema:
  - {name: alert_id, data_type: bigint}
  - {name: transaction_id, data_type: bigint}
  - {name: customer_id, data_type: integer}
  - {name: alert_type, data_type: string}
  - {name: severity, data_type: string}
  - {name: alert_score, data_type: double}
  - {name: created_at, data_type: timestamp}
""",
    "transforms/09_transform_txn_enriched.yml": """\
kind: transform
name: txn_enriched
description: >
  Each transaction joined to its customer, device and IP address, with amount,
  velocity, device and location signals. One row per transaction.
owner: fraud-team
tags: [fraud, enrichment]
inputs:
  - ref: source.transactions
  - ref: source.user_profiles
  - ref: source.device_fingerprints
  - ref: source.ip_geolocation
transform: |
  SELECT
    t.transaction_id,
    t.customer_id,
    t.card_id,
    t.merchant_id,
    t.device_id,
    t.ip_address,
    t.amount,
    t.channel,
    t.event_time,
    t.is_fraud,
    u.country AS customer_country,
    u.kyc_verified,
    date_diff('day', u.signup_date, CAST(t.event_time AS DATE)) AS account_age_days,
    round(
      (ln(t.amount) - avg(ln(t.amount)) OVER by_channel)
        / nullif(stddev_pop(ln(t.amount)) OVER by_channel, 0),
      4
    ) AS amount_zscore,
    round(t.amount / avg(t.amount) OVER by_customer, 4) AS amount_to_customer_avg,
    count(*) OVER (
      PARTITION BY t.customer_id ORDER BY t.event_time
      RANGE BETWEEN INTERVAL 24 HOURS PRECEDING AND CURRENT ROW
    ) AS txn_count_24h,
    date_diff(
      'second',
      lag(t.event_time) OVER (
        PARTITION BY t.customer_id ORDER BY t.event_time, t.transaction_id
      ),
      t.event_time
    ) AS seconds_since_prev_txn,
    d.device_type,
    d.is_emulator,
    d.risk_score AS device_risk_score,
    d.customer_id IS DISTINCT FROM t.customer_id AS is_foreign_device,
    date_diff('day', d.first_seen_at, t.event_time) AS device_age_days,
    g.country AS ip_country,
    g.is_proxy,
    g.is_hosting,
    round(1 - g.reputation_score / 100, 4) AS ip_reputation_score,
    g.country IS DISTINCT FROM u.country AS ip_country_mismatch
  FROM source.transactions AS t
  LEFT JOIN source.user_profiles AS u ON u.customer_id = t.customer_id
  LEFT JOIN source.device_fingerprints AS d ON d.device_id = t.device_id
  LEFT JOIN source.ip_geolocation AS g ON g.ip_address = t.ip_address
  WINDOW
    by_channel AS (PARTITION BY t.channel),
    by_customer AS (PARTITION BY t.customer_id)
""",
    "transforms/10_transform_merchant_risk.yml": """\
kind: transform
name: merchant_risk
description: >
  Fraud rate of each merchant and of its category from closed cases, smoothed
  towards the overall rate so that merchants with few cases are not extreme.
  One row per merchant.
owner: fraud-team
tags: [fraud, merchants]
inputs:
  - ref: source.merchant_data
  - ref: source.fraud_labels
transform: |
  WITH cases AS (
    SELECT
      merchant_id,
      count(*) AS reviewed_txn_count,
      count(*) FILTER (WHERE is_fraud) AS fraud_txn_count,
      sum(loss_amount) AS fraud_loss
    FROM source.fraud_labels
    GROUP BY merchant_id
  ),
  overall AS (
    SELECT avg(CAST(is_fraud AS DOUBLE)) AS fraud_rate FROM source.fraud_labels
  ),
  merchants AS (
    SELECT
      m.merchant_id,
      m.category,
      m.country AS merchant_country,
      coalesce(c.reviewed_txn_count, 0) AS reviewed_txn_count,
      coalesce(c.fraud_txn_count, 0) AS fraud_txn_count,
      coalesce(c.fraud_loss, 0) AS fraud_loss
    FROM source.merchant_data AS m
    LEFT JOIN cases AS c ON c.merchant_id = m.merchant_id
  ),
  rates AS (
    SELECT
      merchants.*,
      (fraud_txn_count + 5 * overall.fraud_rate)
        / (reviewed_txn_count + 5) AS merchant_fraud_rate,
      (sum(fraud_txn_count) OVER by_category + 20 * overall.fraud_rate)
        / (sum(reviewed_txn_count) OVER by_category + 20) AS category_fraud_rate
    FROM merchants, overall
    WINDOW by_category AS (PARTITION BY category)
  )
  SELECT
    merchant_id,
    category,
    merchant_country,
    reviewed_txn_count,
    fraud_txn_count,
    round(fraud_loss, 2) AS fraud_loss,
    round(merchant_fraud_rate, 4) AS merchant_fraud_rate,
    round(category_fraud_rate, 4) AS category_fraud_rate,
    round(0.6 * merchant_fraud_rate + 0.4 * category_fraud_rate, 4)
      AS merchant_risk_score
  FROM rates
""",
    "transforms/11_transform_card_velocity.yml": """\
kind: transform
name: card_velocity
description: >
  How fast and how widely each card is used: counts, spend, busiest day, the last
  seven days of activity and credit utilisation. One row per card, including
  cards without transactions.
owner: fraud-team
tags: [fraud, velocity]
inputs:
  - ref: source.card_data
  - ref: source.transactions
transform: |
  WITH txns AS (
    SELECT
      card_id,
      merchant_id,
      device_id,
      ip_address,
      amount,
      event_time,
      max(event_time) OVER (PARTITION BY card_id) AS last_txn_at
    FROM source.transactions
  ),
  per_card AS (
    SELECT
      card_id,
      count(*) AS txn_count,
      count(*) FILTER (WHERE event_time > last_txn_at - INTERVAL 7 DAYS)
        AS txn_count_7d,
      sum(amount) AS total_amount,
      avg(amount) AS avg_amount,
      max(amount) AS max_amount,
      count(DISTINCT merchant_id) AS distinct_merchants,
      count(DISTINCT device_id) AS distinct_devices,
      count(DISTINCT ip_address) AS distinct_ips,
      max(last_txn_at) AS last_txn_at
    FROM txns
    GROUP BY card_id
  ),
  busiest_day AS (
    SELECT card_id, max(daily_count) AS max_txns_per_day
    FROM (
      SELECT card_id, CAST(event_time AS DATE) AS day, count(*) AS daily_count
      FROM source.transactions
      GROUP BY card_id, day
    )
    GROUP BY card_id
  )
  SELECT
    c.card_id,
    c.customer_id,
    c.card_type,
    c.issued_on,
    coalesce(p.txn_count, 0) AS txn_count,
    coalesce(p.txn_count_7d, 0) AS txn_count_7d,
    coalesce(b.max_txns_per_day, 0) AS max_txns_per_day,
    round(coalesce(p.total_amount, 0), 2) AS total_amount,
    round(p.avg_amount, 2) AS avg_amount,
    p.max_amount,
    coalesce(p.distinct_merchants, 0) AS distinct_merchants,
    coalesce(p.distinct_devices, 0) AS distinct_devices,
    coalesce(p.distinct_ips, 0) AS distinct_ips,
    round(p.total_amount / c.credit_limit, 4) AS credit_utilisation,
    p.last_txn_at
  FROM source.card_data AS c
  LEFT JOIN per_card AS p ON p.card_id = c.card_id
  LEFT JOIN busiest_day AS b ON b.card_id = c.card_id
""",
    "transforms/12_transform_alert_features.yml": """\
kind: transform
name: alert_features
description: >
  Each real-time alert with the payment that raised it, how quickly it fired
  and how many alerts the customer had in the week before. One row per alert.
owner: fraud-team
tags: [fraud, alerts]
inputs:
  - ref: source.realtime_alerts
  - ref: source.transactions
transform: |
  SELECT
    a.alert_id,
    a.transaction_id,
    a.customer_id,
    a.alert_type,
    a.severity,
    a.alert_score,
    a.created_at,
    date_diff('second', t.event_time, a.created_at) AS detection_delay_seconds,
    t.amount AS txn_amount,
    t.channel,
    count(*) OVER (
      PARTITION BY a.customer_id ORDER BY a.created_at
      RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW
    ) AS customer_alerts_7d,
    row_number() OVER (
      PARTITION BY a.customer_id ORDER BY a.created_at, a.alert_id
    ) AS customer_alert_seq
  FROM source.realtime_alerts AS a
  LEFT JOIN source.transactions AS t ON t.transaction_id = a.transaction_id
""",
    "feature_groups/13_feature_group_txn_features.yml": """\
kind: feature_group
name: txn_features
description: >
  Features of one payment at the moment it happened, plus its outcome
  (is_fraud) so that a training set can be built from this group.
owner: fraud-team
tags: [fraud, features]
entity:
  name: transaction
  join_keys: [transaction_id]
materialization:
  event_time_col: event_time
  offline: true
  online: false
inputs:
  - ref: transform.txn_enriched
  - ref: transform.merchant_risk
transform: |
  SELECT
    e.transaction_id,
    e.event_time,
    e.customer_id,
    e.amount AS txn_amount,
    m.merchant_risk_score,
    m.merchant_fraud_rate,
    e.amount_zscore,
    e.txn_count_24h,
    e.seconds_since_prev_txn,
    e.account_age_days,
    e.device_risk_score,
    e.is_emulator,
    e.is_foreign_device,
    e.ip_country_mismatch,
    e.is_proxy,
    e.ip_reputation_score,
    e.channel,
    e.is_fraud
  FROM transform.txn_enriched AS e
  LEFT JOIN transform.merchant_risk AS m ON m.merchant_id = e.merchant_id
features:
  customer_id:
    dtype: integer
  txn_amount:
    dtype: float
  merchant_risk_score:
    dtype: float
  merchant_fraud_rate:
    dtype: float
  amount_zscore:
    dtype: float
  txn_count_24h:
    dtype: integer
  seconds_since_prev_txn:
    dtype: integer
  account_age_days:
    dtype: integer
  device_risk_score:
    dtype: float
  is_emulator:
    dtype: boolean
  is_foreign_device:
    dtype: boolean
  ip_country_mismatch:
    dtype: boolean
  is_proxy:
    dtype: boolean
  channel:
    dtype: string
  is_fraud:
    dtype: boolean
""",
    "feature_groups/14_feature_group_user_risk.yml": """\
kind: feature_group
name: user_risk
description: >
  Risk profile of each customer from the velocity of their cards and the alerts
  raised on their payments. One row per customer, timed at their last activity.
owner: fraud-team
tags: [fraud, features, customers]
entity:
  name: customer
  join_keys: [customer_id]
materialization:
  event_time_col: last_activity_at
  offline: true
  online: false
inputs:
  - ref: transform.card_velocity
  - ref: transform.alert_features
transform: |
  WITH cards AS (
    SELECT
      customer_id,
      count(*) AS card_count,
      sum(txn_count) AS txn_count,
      sum(txn_count_7d) AS txn_count_7d,
      sum(total_amount) AS total_spend,
      max(max_txns_per_day) AS max_txns_per_day,
      max(credit_utilisation) AS max_credit_utilisation,
      bool_or(card_type = 'prepaid') AS has_prepaid_card,
      max(last_txn_at) AS last_txn_at,
      max(issued_on) AS last_card_issued_on
    FROM transform.card_velocity
    GROUP BY customer_id
  ),
  alerts AS (
    SELECT
      customer_id,
      count(*) AS alert_count,
      count(*) FILTER (WHERE severity = 'high') AS high_severity_alert_count,
      avg(alert_score) AS avg_alert_score,
      max(customer_alerts_7d) AS max_alerts_7d,
      max(created_at) AS last_alert_at
    FROM transform.alert_features
    GROUP BY customer_id
  )
  SELECT
    c.customer_id,
    greatest(
      c.last_txn_at, a.last_alert_at, CAST(c.last_card_issued_on AS TIMESTAMP)
    ) AS last_activity_at,
    c.card_count,
    c.txn_count AS user_txn_count,
    c.txn_count_7d AS user_txn_count_7d,
    c.total_spend,
    c.max_txns_per_day,
    c.max_credit_utilisation,
    c.has_prepaid_card,
    coalesce(a.alert_count, 0) AS alert_count,
    coalesce(a.high_severity_alert_count, 0) AS high_severity_alert_count,
    coalesce(a.max_alerts_7d, 0) AS max_alerts_7d,
    round(coalesce(a.avg_alert_score, 0), 4) AS avg_alert_score,
    round(
      1 - exp(-(
        0.5 * coalesce(a.alert_count, 0)
        + 1.0 * coalesce(a.high_severity_alert_count, 0)
        + 0.3 * greatest(c.max_txns_per_day - 3, 0)
        + 0.4 * CAST(c.has_prepaid_card AS INTEGER)
      )),
      4
    ) AS user_risk_score
  FROM cards AS c
  LEFT JOIN alerts AS a ON a.customer_id = c.customer_id
features:
  card_count:
    dtype: integer
  user_txn_count:
    dtype: integer
  user_txn_count_7d:
    dtype: integer
  total_spend:
    dtype: double
  max_txns_per_day:
    dtype: integer
  max_credit_utilisation:
    dtype: float
  has_prepaid_card:
    dtype: boolean
  alert_count:
    dtype: integer
  high_severity_alert_count:
    dtype: integer
  max_alerts_7d:
    dtype: integer
  avg_alert_score:
    dtype: float
  user_risk_score:
    dtype: float
""",
    "exposures/15_exposure_training_data.yml": """\
kind: exposure
name: training_data
description: >
  The model's training set: every transaction's features beside its customer's
  risk profile, with the fraud outcome as the last column.
owner: fraud-team
tags: [fraud, training]
type: file
params:
  path: target/exports/training_data.parquet
  format: parquet
inputs:
  - ref: feature_group.txn_features
  - ref: feature_group.user_risk
transform: |
  SELECT
    f.* EXCLUDE (is_fraud),
    u.* EXCLUDE (customer_id, last_activity_at),
    f.is_fraud
  FROM feature_group.txn_features AS f
  LEFT JOIN feature_group.user_risk AS u ON u.customer_id = f.customer_id
  ORDER BY f.event_time, f.transaction_id
""",
}

README = """\
# Fraud detection example

A card-payments fraud pipeline of 15 nodes in four layers, over synthetic data
generated by `seeknal init --example fraud-detection DIR [--scale N]`.

```
layer 1  eight sources     transactions, user_profiles, device_fingerprints,
                           ip_geolocation, merchant_data, card_data,
                           fraud_labels, realtime_alerts
layer 2  four transforms   txn_enriched   <- transactions, user_profiles,
                                             device_fingerprints, ip_geolocation
                           merchant_risk  <- merchant_data, fraud_labels
                           card_velocity  <- card_data, transactions
                           alert_features <- realtime_alerts, transactions
layer 3  feature groups    txn_features   <- txn_enriched, merchant_risk
                           user_risk      <- card_velocity, alert_features
layer 4  exposure          training_data  <- txn_features, user_risk
```

Run it with `seeknal run --parallel` in this folder; outputs land in `target/`
and the training set is also written to `target/exports/training_data.parquet`.

## The data

`data/` holds eight files: six CSV and two Parquet (`device_fingerprints` and
`realtime_alerts`), so both readers are exercised. At scale 1 there are 10,000
transactions over January to March 2024, 5,000 customers, 8,000 devices, 3,000
IP addresses, 1,500 merchants, 6,000 cards, 2,000 closed fraud cases and 1,000
real-time alerts; `--scale N` multiplies every count. The same scale always
gives the same rows (byte for byte with the same DuckDB version).

About one payment in twenty is made by a fraudster: from a device registered to
someone else or an emulator, through a proxy or a foreign IP address, at a
risky merchant, for a larger amount. The fraud team reviewed the 2,000 most
suspicious payments (and every one a customer disputed); `fraud_labels` holds
those cases, and a transaction's `is_fraud` is true when its case confirmed
fraud. Undetected fraud stays labelled false, as it would in real data.

## Rows per node

| node | rows at scale 1 | one row per |
| --- | --- | --- |
| transform.txn_enriched | 10,000 | transaction |
| transform.merchant_risk | 1,500 | merchant |
| transform.card_velocity | 6,000 | card |
| transform.alert_features | 1,000 | alert |
| feature_group.txn_features | 10,000 | transaction |
| feature_group.user_risk | 5,000 | customer (every customer holds a card) |
| exposure.training_data | 10,000 | transaction |

## The feature groups

- `txn_features`: entity `transaction`, join key `transaction_id`, event time
  `event_time`. Its features describe the payment (amount, amount z-score within
  its channel, payments by the customer in the last 24 hours), the device, the
  IP address and the merchant's risk score. `customer_id` is a feature so that
  customer-level groups can be joined on it, and `is_fraud` travels with the
  features so that the exposure can pair them with the outcome.
- `user_risk`: entity `customer`, join key `customer_id`, event time
  `last_activity_at` (the customer's latest payment, alert or card issue).

## Trying a change

The SQL of `txn_features` already selects `ip_reputation_score` from
`txn_enriched`, but the column is not yet a feature. Add it to the end of
`seeknal/feature_groups/13_feature_group_txn_features.yml`:

```yaml
  ip_reputation_score:
    dtype: float
```

and `seeknal plan experiment` classifies the change as non-breaking, with
`training_data` as its only dependent. Removing `merchant_risk_score` instead is
a breaking change.

## Limits

The data are synthetic and the signals deliberately strong. Merchant fraud
rates and the `user_risk` profiles summarise the whole three months, so a model
trained on `training_data` sees some information from after each payment; a
production pipeline would compute them as of each payment's time.
"""

_MACROS = """
-- uniform(i, salt): a draw in [0, 1) for row number i, with one salt per column.
-- It is murmur3's 32-bit finaliser in integer arithmetic, so every machine and
-- DuckDB version draws the same values.
CREATE MACRO mix_a(h) AS xor(h, h >> 16);
CREATE MACRO mix_b(h) AS xor((h * 2246822507) % 4294967296,
                             ((h * 2246822507) % 4294967296) >> 13);
CREATE MACRO mix_c(h) AS (h * 3266489909) % 4294967296;
CREATE MACRO uniform(i, salt) AS mix_a(mix_c(mix_b(mix_a(
    (CAST(i AS UBIGINT) * 2654435761 + CAST(salt AS UBIGINT) * 2246822519
     + 374761393) % 4294967296)))) / 4294967296.0;
CREATE MACRO pick(i, salt, n) AS 1 + CAST(floor(uniform(i, salt) * n) AS BIGINT);
CREATE MACRO normal(i, salt) AS
    sqrt(-2 * ln(1 - uniform(i, salt))) * cos(2 * pi() * uniform(i, salt + 7919));
CREATE MACRO at_second(start, seconds) AS
    make_timestamp(epoch_us(start) + CAST(floor(seconds) AS BIGINT) * 1000000);
CREATE MACRO ip_of(j) AS printf('%d.%d.%d.%d',
    23 + CAST(floor(uniform(j, 300) * 170) AS INTEGER),
    ((j * 2654435761) % 16777216) // 65536,
    ((j * 2654435761) % 65536) // 256,
    (j * 2654435761) % 256);
"""

COUNTRY_SHARES: dict[str, float] = {
    "US": 0.30,
    "GB": 0.12,
    "DE": 0.10,
    "FR": 0.08,
    "IN": 0.10,
    "BR": 0.08,
    "ID": 0.07,
    "SG": 0.05,
    "NG": 0.05,
    "CA": 0.05,
}

MERCHANT_CATEGORIES: dict[str, tuple[float, int, str]] = {
    "grocery": (0.22, 5411, "Market"),
    "restaurants": (0.18, 5812, "Kitchen"),
    "fuel": (0.10, 5541, "Fuel"),
    "fashion": (0.12, 5651, "Apparel"),
    "utilities": (0.08, 4900, "Energy"),
    "travel": (0.08, 4722, "Travel"),
    "electronics": (0.09, 5732, "Electronics"),
    "gaming": (0.05, 5816, "Games"),
    "gift_cards": (0.04, 5947, "Gift Cards"),
    "crypto_exchange": (0.04, 6051, "Coin Exchange"),
}
HIGH_RISK_CATEGORIES = (
    "travel",
    "electronics",
    "gaming",
    "gift_cards",
    "crypto_exchange",
)


def _literal(value: str | int) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _weighted_choice(draw: str, shares: dict[str, float] | dict[int, float]) -> str:
    *leading, (last, _) = shares.items()
    branches = []
    cumulative = 0.0
    for value, share in leading:
        cumulative += share
        branches.append(f"WHEN {draw} < {cumulative:.6g} THEN {_literal(value)}")
    return f"CASE {' '.join(branches)} ELSE {_literal(last)} END"


def _lookup(column: str, mapping: dict[str, str] | dict[str, int]) -> str:
    branches = " ".join(
        f"WHEN {_literal(key)} THEN {_literal(value)}" for key, value in mapping.items()
    )
    return f"CASE {column} {branches} END"


_COUNTRY_LIST = "[" + ", ".join(_literal(code) for code in COUNTRY_SHARES) + "]"
_COUNTRY_INDEX_SHARES = {
    index: share for index, share in enumerate(COUNTRY_SHARES.values(), start=1)
}
_CUSTOMER_COUNTRY = _weighted_choice("uniform(i, 102)", _COUNTRY_INDEX_SHARES)
_MERCHANT_COUNTRY = _weighted_choice("uniform(merchant_id, 403)", _COUNTRY_INDEX_SHARES)
_ACCOUNT_TIER = _weighted_choice(
    "uniform(customer_id, 104)", {"basic": 0.6, "plus": 0.28, "premium": 0.12}
)
_DEVICE_TYPE = _weighted_choice(
    "uniform(d, 201)", {"mobile": 0.62, "desktop": 0.30, "tablet": 0.08}
)
_DESKTOP_OS = _weighted_choice(
    "uniform(device_id, 202)", {"windows": 0.68, "macos": 0.26, "linux": 0.06}
)
_MERCHANT_CATEGORY = _weighted_choice(
    "uniform(m, 401)",
    {name: share for name, (share, _, _) in MERCHANT_CATEGORIES.items()},
)
_CATEGORY_WORD = _lookup(
    "category", {name: word for name, (_, _, word) in MERCHANT_CATEGORIES.items()}
)
_CATEGORY_MCC = _lookup(
    "category", {name: mcc for name, (_, mcc, _) in MERCHANT_CATEGORIES.items()}
)
_HIGH_RISK_LIST = "(" + ", ".join(_literal(name) for name in HIGH_RISK_CATEGORIES) + ")"
_CARD_TYPE = _weighted_choice(
    "uniform(c, 501)", {"credit": 0.5, "debit": 0.42, "prepaid": 0.08}
)
_CARD_NETWORK = _weighted_choice(
    "uniform(card_id, 502)", {"visa": 0.55, "mastercard": 0.35, "amex": 0.1}
)
_FRAUD_CHANNEL = _weighted_choice(
    "uniform(transaction_id, 651)", {"online": 0.8, "pos": 0.12, "atm": 0.08}
)
_USUAL_CHANNEL = _weighted_choice(
    "uniform(transaction_id, 651)", {"pos": 0.5, "online": 0.4, "atm": 0.1}
)

# An f-string leaving a str.format template: generate_data fills {{transactions}}
# and the other source names with their row counts.
_GENERATE = f"""
CREATE TABLE users AS
WITH base AS (
    SELECT
        i AS customer_id,
        {_CUSTOMER_COUNTRY} AS country_index
    FROM range(1, {{user_profiles}} + 1) AS r(i)
)
SELECT
    customer_id,
    DATE '2018-01-01' + CAST(floor(uniform(customer_id, 101) * 2190) AS INTEGER)
        AS signup_date,
    country_index,
    {_COUNTRY_LIST}[country_index] AS country,
    18 + CAST(floor(62 * pow(uniform(customer_id, 103), 1.6)) AS INTEGER) AS age,
    {_ACCOUNT_TIER} AS account_tier,
    uniform(customer_id, 105) < .93 AS kyc_verified,
    normal(customer_id, 106) AS spend_level
FROM base;

CREATE TABLE devices AS
WITH base AS (
    SELECT
        d AS device_id,
        (d - 1) % {{user_profiles}} + 1 AS customer_id,
        {_DEVICE_TYPE} AS device_type,
        uniform(d, 203) < .03 AS is_emulator
    FROM range(1, {{device_fingerprints}} + 1) AS r(d)
)
SELECT
    device_id,
    customer_id,
    device_type,
    CASE
        WHEN device_type = 'desktop' THEN {_DESKTOP_OS}
        WHEN is_emulator OR uniform(device_id, 202) < .55 THEN 'android'
        ELSE 'ios'
    END AS os,
    is_emulator,
    CASE
        WHEN is_emulator
            THEN at_second(TIMESTAMP '2023-11-01', uniform(device_id, 204) * 60 * 86400)
        ELSE at_second(TIMESTAMP '2022-01-01', uniform(device_id, 204) * 730 * 86400)
    END AS first_seen_at,
    round(
        CASE
            WHEN is_emulator THEN .65 + .35 * uniform(device_id, 205)
            ELSE .35 * pow(uniform(device_id, 205), 3)
        END,
        3
    ) AS risk_score
FROM base;

CREATE TABLE ips AS
WITH base AS (
    SELECT j AS ip_index, uniform(j, 301) < .04 AS is_proxy
    FROM range(0, {{ip_geolocation}}) AS r(j)
)
SELECT
    ip_index,
    ip_of(ip_index) AS ip_address,
    {_COUNTRY_LIST}[ip_index % 10 + 1] AS country,
    1000 + CAST(floor(uniform(ip_index, 302) * 64000) AS INTEGER) AS asn,
    is_proxy,
    is_proxy OR uniform(ip_index, 303) < .03 AS is_hosting,
    round(
        CASE
            WHEN is_proxy THEN 5 + 30 * uniform(ip_index, 304)
            ELSE 55 + 45 * uniform(ip_index, 304)
        END,
        1
    ) AS reputation_score
FROM base;

CREATE TABLE merchants AS
WITH base AS (
    SELECT
        m AS merchant_id,
        {_MERCHANT_CATEGORY} AS category
    FROM range(1, {{merchant_data}} + 1) AS r(m)
)
SELECT
    merchant_id,
    ['Blue', 'North', 'Golden', 'Urban', 'Prime', 'Quick', 'Silver', 'Green',
     'Metro', 'Bright', 'Harbor', 'Summit'][pick(merchant_id, 402, 12)]
        || ' ' || {_CATEGORY_WORD} AS merchant_name,
    category,
    {_CATEGORY_MCC} AS mcc,
    {_COUNTRY_LIST}[{_MERCHANT_COUNTRY}] AS country,
    DATE '2015-01-01' + CAST(floor(uniform(merchant_id, 404) * 3200) AS INTEGER)
        AS onboarded_on,
    category IN {_HIGH_RISK_LIST} AS is_high_risk
FROM base;

CREATE TABLE cards AS
WITH base AS (
    SELECT
        c AS card_id,
        (c - 1) % {{user_profiles}} + 1 AS customer_id,
        {_CARD_TYPE} AS card_type,
        DATE '2020-02-01' + CAST(floor(uniform(c, 503) * 1400) AS INTEGER) AS issued_on
    FROM range(1, {{card_data}} + 1) AS r(c)
)
SELECT
    card_id,
    customer_id,
    card_type,
    {_CARD_NETWORK} AS network,
    issued_on,
    CAST(issued_on + INTERVAL 5 YEAR AS DATE) AS expires_on,
    CASE
        WHEN card_type = 'credit'
            THEN 100 * round(5 + 95 * pow(uniform(card_id, 504), 2))
    END AS credit_limit
FROM base;

CREATE TABLE emulators AS
SELECT row_number() OVER (ORDER BY device_id) AS k, device_id
FROM devices WHERE is_emulator;

CREATE TABLE proxies AS
SELECT row_number() OVER (ORDER BY ip_index) AS k, ip_index
FROM ips WHERE is_proxy;

CREATE TABLE risky_merchants AS
SELECT row_number() OVER (ORDER BY merchant_id) AS k, merchant_id
FROM merchants WHERE is_high_risk;

-- Each payment draws a card (and so its owner) and a time; about one in twenty
-- is a fraudster's, more often on prepaid cards.
CREATE TABLE txn_draws AS
WITH pools AS (
    SELECT
        (SELECT count(*) FROM risky_merchants) AS risky_merchants,
        (SELECT count(*) FROM emulators) AS emulators,
        (SELECT count(*) FROM proxies) AS proxies
)
SELECT
    t.i AS transaction_id,
    c.card_id,
    c.customer_id,
    us.country_index,
    us.spend_level,
    uniform(t.i, 602) < CASE WHEN c.card_type = 'prepaid' THEN .12 ELSE .045 END
        AS is_attack,
    at_second(
        TIMESTAMP '2024-01-01',
        ((t.i - 1) + uniform(t.i, 603)) * 90 * 86400 / {{transactions}}
    ) AS event_time,
    pick(t.i, 613, pools.risky_merchants) AS risky_merchant_k,
    pick(t.i, 623, pools.emulators) AS emulator_k,
    pick(t.i, 634, pools.proxies) AS proxy_k
FROM range(1, {{transactions}} + 1) AS t(i)
CROSS JOIN pools
JOIN cards AS c ON c.card_id = pick(t.i, 601, {{card_data}})
JOIN users AS us ON us.customer_id = c.customer_id;

-- A fraudster favours risky merchants, emulators, foreign devices, proxies,
-- online payments and larger sums; a customer mostly pays from their own
-- devices and home country. rule_score is what the bank's rules can see.
CREATE TABLE txns AS
WITH chosen AS (
    SELECT
        d.transaction_id,
        d.card_id,
        d.customer_id,
        d.event_time,
        d.is_attack,
        CASE
            WHEN d.is_attack AND uniform(transaction_id, 611) < .6
                THEN rm.merchant_id
            ELSE 1 + CAST(floor(pow(uniform(transaction_id, 612), 2) * {{merchant_data}})
                          AS BIGINT)
        END AS merchant_id,
        CASE
            WHEN d.is_attack AND uniform(transaction_id, 621) < .4 THEN em.device_id
            WHEN d.is_attack THEN pick(transaction_id, 622, {{device_fingerprints}})
            WHEN uniform(transaction_id, 621) < .75 THEN d.customer_id
            WHEN uniform(transaction_id, 621) < .92
                 AND d.customer_id + {{user_profiles}} <= {{device_fingerprints}}
                THEN d.customer_id + {{user_profiles}}
            WHEN uniform(transaction_id, 621) < .92 THEN d.customer_id
            ELSE pick(transaction_id, 622, {{device_fingerprints}})
        END AS device_id,
        CASE
            WHEN d.is_attack AND uniform(transaction_id, 631) < .45 THEN px.ip_index
            WHEN NOT d.is_attack AND uniform(transaction_id, 631) < .9
                THEN 10 * CAST(floor(uniform(transaction_id, 632) * {{ip_geolocation}} / 10)
                               AS BIGINT) + d.country_index - 1
            ELSE pick(transaction_id, 633, {{ip_geolocation}}) - 1
        END AS ip_index,
        round(
            greatest(1, least(20000, exp(
                CASE
                    WHEN d.is_attack THEN 4.9 + .9 * normal(transaction_id, 641)
                    ELSE 3.3 + .45 * d.spend_level + .85 * normal(transaction_id, 641)
                END
            ))),
            2
        ) AS amount,
        CASE
            WHEN d.is_attack THEN {_FRAUD_CHANNEL}
            ELSE {_USUAL_CHANNEL}
        END AS channel
    FROM txn_draws AS d
    LEFT JOIN risky_merchants AS rm ON rm.k = d.risky_merchant_k
    LEFT JOIN emulators AS em ON em.k = d.emulator_k
    LEFT JOIN proxies AS px ON px.k = d.proxy_k
)
SELECT
    ch.*,
    ips.ip_address,
    1.5 * CAST(dv.is_emulator AS INTEGER)
        + 1.2 * CAST(ips.is_proxy AS INTEGER)
        + 1.0 * CAST(ips.country <> us.country AS INTEGER)
        + 0.8 * CAST(dv.customer_id <> ch.customer_id AS INTEGER)
        + 0.8 * CAST(m.is_high_risk AS INTEGER)
        + 0.6 * CAST(ch.amount > 400 AS INTEGER)
        + 0.4 * CAST(ch.channel = 'online' AS INTEGER) AS rule_score,
    CASE
        WHEN dv.is_emulator THEN 'emulator_device'
        WHEN ips.is_proxy THEN 'proxy_ip'
        WHEN ips.country <> us.country THEN 'geo_mismatch'
        WHEN dv.customer_id <> ch.customer_id THEN 'new_device'
        WHEN ch.amount > 400 THEN 'high_amount'
        ELSE 'unusual_pattern'
    END AS strongest_rule,
    ch.is_attack AND uniform(ch.transaction_id, 661) < .7 AS is_disputed
FROM chosen AS ch
JOIN ips ON ips.ip_index = ch.ip_index
JOIN devices AS dv ON dv.device_id = ch.device_id
JOIN merchants AS m ON m.merchant_id = ch.merchant_id
JOIN users AS us ON us.customer_id = ch.customer_id;

-- The fraud team closes a case for every disputed payment and for the most
-- suspicious others, up to the number of labels.
CREATE TABLE reviews AS
SELECT
    transaction_id,
    merchant_id,
    is_attack AS is_fraud,
    CASE
        WHEN is_disputed THEN 'customer_dispute'
        WHEN uniform(transaction_id, 672) < .5 THEN 'analyst_review'
        ELSE 'rule_review'
    END AS label_source,
    at_second(
        event_time,
        CASE WHEN is_disputed THEN 2 + 38 * uniform(transaction_id, 673) ELSE
            1 + 9 * uniform(transaction_id, 673) END * 86400
    ) AS reported_at,
    CASE WHEN is_attack THEN amount ELSE 0 END AS loss_amount
FROM txns
ORDER BY 10 * CAST(is_disputed AS INTEGER) + rule_score + 1.5 * uniform(transaction_id, 671)
    DESC, transaction_id
LIMIT {{fraud_labels}};

-- The real-time rules alert on the highest-scoring payments.
CREATE TABLE alerts AS
WITH raised AS (
    SELECT
        transaction_id,
        customer_id,
        strongest_rule,
        rule_score + 2 * uniform(transaction_id, 681) AS priority,
        at_second(event_time, 1 + 29 * uniform(transaction_id, 682)) AS created_at
    FROM txns
    ORDER BY priority DESC, transaction_id
    LIMIT {{realtime_alerts}}
)
SELECT
    row_number() OVER (ORDER BY created_at, transaction_id) AS alert_id,
    transaction_id,
    customer_id,
    strongest_rule AS alert_type,
    CASE
        WHEN priority >= 5 THEN 'high'
        WHEN priority >= 4 THEN 'medium'
        ELSE 'low'
    END AS severity,
    round(1 - exp(-priority / 3), 3) AS alert_score,
    created_at
FROM raised;
"""

_EXPORTS: dict[str, str] = {
    "transactions": """
        SELECT
            t.transaction_id, CAST(t.customer_id AS INTEGER) AS customer_id,
            CAST(t.card_id AS INTEGER) AS card_id,
            CAST(t.merchant_id AS INTEGER) AS merchant_id,
            CAST(t.device_id AS INTEGER) AS device_id, t.ip_address, t.amount,
            t.channel, t.event_time, coalesce(r.is_fraud, false) AS is_fraud
        FROM txns AS t LEFT JOIN reviews AS r USING (transaction_id)
        ORDER BY t.transaction_id""",
    "user_profiles": """
        SELECT CAST(customer_id AS INTEGER) AS customer_id, signup_date, country,
               age, account_tier, kyc_verified
        FROM users ORDER BY customer_id""",
    "device_fingerprints": """
        SELECT CAST(device_id AS INTEGER) AS device_id,
               CAST(customer_id AS INTEGER) AS customer_id, device_type, os,
               is_emulator, first_seen_at, CAST(risk_score AS DOUBLE) AS risk_score
        FROM devices ORDER BY device_id""",
    "ip_geolocation": """
        SELECT ip_address, country, asn, is_proxy, is_hosting, reputation_score
        FROM ips ORDER BY ip_index""",
    "merchant_data": """
        SELECT CAST(merchant_id AS INTEGER) AS merchant_id, merchant_name, category,
               mcc, country, onboarded_on
        FROM merchants ORDER BY merchant_id""",
    "card_data": """
        SELECT CAST(card_id AS INTEGER) AS card_id,
               CAST(customer_id AS INTEGER) AS customer_id, card_type, network,
               issued_on, expires_on, credit_limit
        FROM cards ORDER BY card_id""",
    "fraud_labels": """
        SELECT row_number() OVER (ORDER BY transaction_id) AS case_id, transaction_id,
               CAST(merchant_id AS INTEGER) AS merchant_id, is_fraud, label_source,
               reported_at, loss_amount
        FROM reviews ORDER BY transaction_id""",
    "realtime_alerts": """
        SELECT alert_id, transaction_id, CAST(customer_id AS INTEGER) AS customer_id,
               alert_type, severity, CAST(alert_score AS DOUBLE) AS alert_score,
               created_at
        FROM alerts ORDER BY alert_id""",
}


def row_counts(scale: int) -> dict[str, int]:
    """Rows of each generated data set at ``scale``.

    Args:
        scale: multiplier of the base row counts (1 or more).

    Returns:
        Source name to row count, e.g. ``{"transactions": 10000 * scale, ...}``.
    """
    return {name: rows * scale for name, rows in BASE_ROWS.items()}


def generate_data(data_dir: Path, scale: int) -> dict[str, Path]:
    """Write the eight source files of the example into ``data_dir``.

    Args:
        data_dir: folder for the files; created if missing.
        scale: multiplier of the base row counts (1 or more).

    Returns:
        Source name to the file written.

    Raises:
        ValueError: if ``scale`` is below 1.
    """
    if scale < 1:
        raise ValueError(f"scale must be 1 or more, got {scale}")
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {name: data_dir / file for name, file in DATA_FILES.items()}
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(_MACROS)
        con.execute(_GENERATE.format(**row_counts(scale)))
        for name, path in written.items():
            con.execute(
                f"COPY ({_EXPORTS[name]}) TO {_sql_string(path)} {_format(path)}"
            )
    return written


def write_project(folder: Path, scale: int) -> Path:
    """Write the fraud-detection project: YAML nodes, generated data and a README.

    Args:
        folder: the project folder; created if missing.
        scale: multiplier of the generated row counts (1 gives 10,000 transactions).

    Returns:
        ``folder``.

    Raises:
        ValueError: if ``scale`` is below 1.
    """
    folder = Path(folder)
    generate_data(folder / "data", scale)

    for relative, text in NODE_FILES.items():
        path = folder / "seeknal" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    (folder / "README.md").write_text(README, encoding="utf-8")
    return folder


def _sql_string(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def _format(path: Path) -> str:
    if path.suffix == ".parquet":
        return "(FORMAT parquet)"
    return "(FORMAT csv, HEADER true, DELIMITER ',')"
