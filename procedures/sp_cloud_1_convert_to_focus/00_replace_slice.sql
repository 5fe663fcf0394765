-- sp_cloud_1_convert_to_focus: cloud billing raw rows -> FOCUS 1.3, for one slice.
-- The procedure is this folder's statements in file-name order: this DELETE, then one INSERT per
-- cloud (10_aws.sql, 20_gcp.sql, ...). Each INSERT reads only its own raw table's rows of the run's
-- pipeline, so the statements of the other clouds insert nothing.
DELETE FROM `{org_dataset}.cost_data_standard_1_3`
WHERE x_org_slug = @org_slug AND x_pipeline_id = @pipeline_id AND x_credential_id = @credential_id
  AND ChargePeriodStart >= TIMESTAMP(@start_date)
  AND ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY));

