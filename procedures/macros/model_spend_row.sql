-- MODEL_SPEND_ROW(pipeline_in, category_in, service_in, meter_in, description_in): TRUE for a FOCUS row
-- sp_genai_4_allocate_cloud_model_spend rewrites: any row of a GenAI pipeline paired with a cloud in
-- fact_tables.yml's cloud_model_spend, and a Usage line of that cloud whose `ServiceName | SkuMeter |
-- ChargeDescription` the pair's model_lines matches. The loader puts this expression in place of the call with
-- the parameters bound to the arguments (the row's columns), so the procedure's steps pick the same rows.
EXISTS (
  SELECT 1 FROM {facts:cloud_model_spend} AS p
  WHERE p.genai_pipeline = pipeline_in
     OR (p.cloud_pipeline = pipeline_in AND category_in = 'Usage'
         AND REGEXP_CONTAINS(CONCAT(IFNULL(service_in, ''), ' | ', IFNULL(meter_in, ''), ' | ',
                                    IFNULL(description_in, '')), p.model_lines)))
