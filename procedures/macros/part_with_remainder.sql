-- PART_WITH_REMAINDER(line_total, part_share): a split line's part of `line_total`, for sp_genai_4's `parts AS p`
-- (one row per part, `p.part` 1 first, `p.x_line_id` the line): its rounded share, except that part 1 takes
-- what the rounding of the others left over, so the parts of a line add up to the line exactly.
IF(p.part = 1, line_total - (SUM(part_share) OVER (PARTITION BY p.x_line_id) - part_share), part_share)
