-- SLICE_ALLOCATED(): TRUE when the run's slice of the FOCUS table already holds the rows
-- sp_genai_4_allocate_cloud_model_spend writes (split cloud lines, GenAI rows the cloud bill pays): the slice
-- was not converted again since the last call, so its allocation sources stand.
EXISTS (
  SELECT 1 FROM `{org_dataset}.cost_data_standard_1_3` AS a
  WHERE a.x_org_slug = @org_slug AND a.x_pipeline_id = @pipeline_id AND a.x_credential_id = @credential_id
    AND a.ChargePeriodStart >= TIMESTAMP(@start_date)
    AND a.ChargePeriodStart < TIMESTAMP(DATE_ADD(@end_date, INTERVAL 1 DAY))
    AND (a.AllocatedMethodId = 'cloudact-genai-usage' OR a.x_cost_source = 'cloud_bill'))
