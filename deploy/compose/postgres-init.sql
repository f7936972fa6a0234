-- One database per node (idres migrates each on its node's first start).
CREATE DATABASE idres_super OWNER idres;
CREATE DATABASE idres_backbone_1 OWNER idres;
CREATE DATABASE idres_sub_a OWNER idres;
