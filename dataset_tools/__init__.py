"""Dataset tools: check, convert (LabelMe → COCO), split, analyse, visualise, synthesise."""
